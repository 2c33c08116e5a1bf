"""CPC (Contrastive Predictive Coding) for MindSpore: one module per concern, nothing runs at import."""
