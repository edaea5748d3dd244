"""The memory engine: the one façade the Discord side calls, and its parts."""
