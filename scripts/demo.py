"""End-to-end demo on the built-in data: corpus -> vocab -> LAC ids/idx -> 2-process pretraining (killed and
resumed) -> fine-tuning (pretrained vs random init) -> export -> Paddle Inference / ONNX Runtime predictions."""
from ernie.demo import main

if __name__ == "__main__":
    main()
