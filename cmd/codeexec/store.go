package main

import "os"

// defaultStore is where images and runtime state live unless CODEEXEC_STORE says otherwise.
const defaultStore = "/var/lib/codeexec"

func storeDir(flag string) string {
	if flag != "" {
		return flag
	}
	if s := os.Getenv("CODEEXEC_STORE"); s != "" {
		return s
	}
	return defaultStore
}
