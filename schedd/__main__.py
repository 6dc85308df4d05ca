from schedd.server.cmd import main

main(prog_name="schedd")
