"""Training: the engine (epoch loop and end-of-epoch steps), train cell, schedule, callbacks, resume, data parallel."""
