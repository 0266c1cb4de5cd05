"""Dataset adapters: one module per on-disk format, each turning a release into a ``Listing``.

An adapter reads label files and names images in the canonical vocabulary; it never decodes
pixels — ``mfer.data.pack`` decodes every record once into the per-node cache.
"""
