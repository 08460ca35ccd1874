from patronus.cli.main import main

main()
