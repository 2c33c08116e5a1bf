"""The CPC network: encoder, context model, scorer, losses, and the digit classifier."""
