"""Evaluation: contrastive accuracy and the downstream digit-classification study."""
