from backend.engine.runtime.cli import console_main

console_main()
