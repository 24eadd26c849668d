"""torchrun entry: ``torchrun --nproc-per-node N -m httm_ros.distributed [httm-reconstruct args]``.

Each process is one rank of ``httm-reconstruct --gpus N`` (NCCL on CUDA, gloo with --device cpu);
rank 0 writes the outputs."""

import sys

from httm_ros.tools.reconstruct import main_torchrun

if __name__ == "__main__":
    sys.exit(main_torchrun())
