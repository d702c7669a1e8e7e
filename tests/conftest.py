import sys
from pathlib import Path

# Test-support modules (the PyTorch reference) live beside the tests.
sys.path.insert(0, str(Path(__file__).parent))
