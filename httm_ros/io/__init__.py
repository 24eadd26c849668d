"""File formats: PLY point clouds / meshes (``ply``), TUM trajectories (``tum``), image folders (``images``)."""
