"""Meta-Dataset transfer (per-domain linear probe and the official episodic protocol).

Not built yet: tracked as its own issue (record reader, converter, episode sampler).
"""
