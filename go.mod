module github.com/tlsmail/tlsmail

go 1.24
