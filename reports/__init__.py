"""Results records and the report built from them."""
