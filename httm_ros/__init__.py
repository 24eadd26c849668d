# httm_ros: VGGT + HTTM 3D reconstruction for ROS 2.
#
# This file must stay free of package contents: the colcon (ament_cmake) build installs the
# rosidl-generated `httm_ros/__init__.py` (for httm_ros.msg) in its place. The line below lets a
# source checkout or a pip install find `httm_ros.msg` in a colcon install on sys.path.
__path__ = __import__("pkgutil").extend_path(__path__, __name__)
