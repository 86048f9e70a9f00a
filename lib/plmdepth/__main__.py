from plmdepth.cli import main

raise SystemExit(main())
