from schedd.cmd import main

main(prog_name="schedd")
