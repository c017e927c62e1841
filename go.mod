module github.com/crewcore/crewcore

go 1.26.8

require (
	github.com/mattn/go-sqlite3 v1.14.53
	github.com/tinylib/msgp v1.6.5
)

require github.com/philhofer/fwd v1.2.0 // indirect
