from remote_agent.worker.main import main

main()
