"""The one error every metric raises: a message naming the input or setting that is wrong."""


class MetricsError(RuntimeError):
    """A metric that cannot be computed as asked (missing weights, too few samples...)."""
