"""The best trial as files anyone can load safely (export: safetensors + JSON), and prediction with them."""
