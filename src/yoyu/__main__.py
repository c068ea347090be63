from yoyu.cli import main

main()
