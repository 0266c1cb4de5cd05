"""Data: class vocabulary, dataset adapters, the synthetic FER generator, packed arrays, batching."""
