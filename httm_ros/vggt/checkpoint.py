class CheckpointError(ValueError):
    pass
def load_checkpoint(*a, **k):
    raise NotImplementedError
