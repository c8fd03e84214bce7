from stockwire.cli import main

raise SystemExit(main())
