import sys

from report_platform_devservers.serve import main

sys.exit(main())
