from geoprom3e.cli import main

main()
