import os
import sys

# `python -m slipstream` put the current folder first on sys.path: when that is a project with a
# calendar.py or json.py, Slipstream's own later imports (httpx, uvicorn) would get those. The
# CLI never imports from the current folder (`run` adds the script's own folder itself).
if sys.path and os.path.realpath(sys.path[0] or os.curdir) == os.path.realpath(os.getcwd()):
    del sys.path[0]

from .cli import main  # noqa: E402

raise SystemExit(main())
