"""Training: Model.train driver, callbacks, resume, PreciseBN, data parallel."""
