import sys

from trustwatch.cli import main

sys.exit(main())
