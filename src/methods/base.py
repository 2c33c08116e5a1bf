"""The interface every pre-training method provides (src/methods/__init__.py finds them by name).

Methods are classes used without instances (every member a static method or a constant), as
stateless as the config they are given; whatever must persist over a run (a compiled scorer) is
returned to the caller, which keeps it.
"""

# what a method must define (checked by register_method; tests/test_methods.py lists them too)
REQUIRED = ("unit", "export_nets", "loss_name", "describe_batch", "build_net", "build_source", "loss_cell",
            "scorer", "evaluate", "calibration_batches")


class Method:
    """Base of the methods: documents each member; none has a default, so a method that forgets
    one is refused at registration."""

    unit = None  # what one validation/test count is of: "sequences", "images" (metrics num_<unit>)
    export_nets = None  # the export.py --net names its checkpoints can give (src/deploy/nets.py)
    # loss_name(cfg) -> str: the loss as metrics.json's "loss" and the logs name it
    loss_name = None
    # describe_batch(cfg) -> str: one training batch in words, for an out-of-memory message
    describe_batch = None
    # build_net(hparams, backend) -> Cell: the network from a checkpoint's hyper-parameters
    build_net = None
    # build_source(cfg, split, num_batches, start=0, data=None): random-access batches (row i is a
    # function of the seed, the split and i, so resume only needs the step)
    build_source = None
    # loss_cell(net, cfg, amp_level="O0") -> Cell: inputs of a training row -> scalar loss
    loss_cell = None
    # scorer(net, cfg) -> Cell: what evaluate() runs per batch; built once per run (each Cell compiles)
    scorer = None
    # evaluate(net, source, scorer) -> {"loss", "accuracy", "chance_accuracy", "num_<unit>", ...}
    evaluate = None
    # calibration_batches(source) -> callable yielding the net's input tuples (PreciseBN)
    calibration_batches = None
