module github.com/crewcore/crewcore

go 1.26.8
