"""Draw loss / learning-rate curves of a pretraining run: python scripts/plot_logs.py --log OUTPUT_DIR --output curves.png"""
from ernie.training.plot import main

if __name__ == "__main__":
    main()
