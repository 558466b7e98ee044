package machine

import "net"

// FreeAddr returns a 127.0.0.1 address whose port was free a moment ago, for
// servers that take an address rather than report the port they got.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
