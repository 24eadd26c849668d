"""pip install of httm_ros for users without ROS: the VGGT model, HTTM merging, the streaming
reconstruction core and the command-line tools. The ROS 2 build (messages, node, launch files)
is the CMake package in CMakeLists.txt; see README.md."""

from setuptools import find_packages, setup

setup(
    name="httm_ros",
    version="0.1.0",
    description="VGGT 3D reconstruction with HTTM head-wise temporal token merging, for ROS 2 and Python",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0 (code); VGGT-1B weights are CC BY-NC 4.0 and not included",
    python_requires=">=3.10",
    packages=find_packages(include=["httm_ros", "httm_ros.*"]),
    package_data={"httm_ros.weights": ["httm-vggt-synth.safetensors", "httm-vggt-synth.json",
                                       "train_log.json", "train_curves.png", "README.md",
                                       "httm-vggt-synth-merge.safetensors", "httm-vggt-synth-merge.json",
                                       "httm-vggt-synth-merge.train_log.json",
                                       "httm-vggt-synth-merge.train_curves.png"]},
    install_requires=[
        "torch>=2.4",
        "numpy>=1.24",
        "safetensors>=0.4",
        "pillow>=10",
        "scipy>=1.10",
    ],
    extras_require={
        "triton": ["triton>=3.0"],
        "bags": ["rosbags>=0.10", "pyyaml>=6"],
    },
    entry_points={
        "console_scripts": [
            "httm-reconstruct=httm_ros.tools.reconstruct:main",
            "httm-eval=httm_ros.eval.eval_cli:main",
            "httm-bench=httm_ros.bench.cli:main",
            "httm-replay=httm_ros.tools.replay:main",
            "httm-reconstruct-bag=httm_ros.tools.reconstruct_bag:main",
            "httm-demo=httm_ros.tools.demo.run:main",
            "httm-view=httm_ros.viewer.command:main",
            "httm-train=httm_ros.train.train_cli:main",
        ],
    },
)
