from bus.cli.main import main

raise SystemExit(main())
