# Issue 21 (parts 5 and 6): help texts generated from the code, and every command stopping
# promptly on SIGTERM/SIGINT with nothing half-written.
sp_script_test(cli_help_types test_help.sh)
