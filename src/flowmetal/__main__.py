from flowmetal.cli import main

main()
