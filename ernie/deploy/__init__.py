"""Deployment: static export of a fine-tuned model and Python predictors on Paddle Inference / ONNX Runtime."""
