from lockgraph.cli import main

main()
