"""The static shelf app: the champion detector in the browser (onnxruntime-web), built by `build.py`."""
