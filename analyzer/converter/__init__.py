"""The bridge to the TensorFlow converter: a worker process that converts SavedModel and Keras
sources, and what its answers mean."""
