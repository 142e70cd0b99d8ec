from maitred.cli import main

main()
