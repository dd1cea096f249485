"""Runtime hook of the frozen bundle: runs before any application code is imported.

VTK renders offscreen through EGL (no X server needed for the views; the Qt window shows the
pixels), as the pip install does; a station may still override it in the environment.
"""

import os

os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
