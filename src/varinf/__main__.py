import sys

from varinf.cli import main

sys.exit(main())
