"""Where the tests find the repository and its recorded fixtures, wherever a test file sits."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
