"""End-to-end demo on the built-in data: corpus -> vocab -> LAC ids/idx -> 2-process pretraining (killed and
resumed) -> fine-tuning (pretrained vs random init) -> export -> Paddle Inference / ONNX Runtime predictions.
The demo lives in examples/demo.py, outside the library: the checkout's root goes on sys.path first."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from examples.demo import main

if __name__ == "__main__":
    main()
