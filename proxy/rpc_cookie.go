package proxy

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// cookieUser is the user name of bitcoind's cookie authentication
// (src/rpc/request.cpp COOKIEAUTH_USER).
const cookieUser = "__cookie__"

// maxCookieFile bounds how much of a cookie file is read: "__cookie__:" and
// 64 hex digits, with room for a newline or a longer secret.
const maxCookieFile = 1024

// writeRPCCookie writes "__cookie__:<64 hex>" from 32 fresh random bytes
// to path, mode 0600, as bitcoind does (writeSecretFile: atomic, replacing
// an old cookie). It returns the "user:password" string.
func writeRPCCookie(path string) (string, error) {
	var secret [32]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return "", fmt.Errorf("cookie: random: %w", err)
	}
	cookie := cookieUser + ":" + hex.EncodeToString(secret[:])
	if err := writeSecretFile(path, []byte(cookie)); err != nil {
		return "", fmt.Errorf("cookie: %w", err)
	}
	return cookie, nil
}

// removeCookie deletes path if it still holds cookie (another process may
// have written its own since).
func removeCookie(path, cookie string) error {
	got, err := readCookie(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if got != cookie {
		return nil
	}
	return os.Remove(path)
}

// readCookie returns the first line of a bitcoind-style cookie file,
// "user:password" (bitcoind's GetAuthCookie reads one line too).
func readCookie(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	line, err := bufio.NewReader(io.LimitReader(f, maxCookieFile)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if !strings.Contains(line, ":") {
		return "", fmt.Errorf("cookie file %s: no user:password line", filepath.Base(path))
	}
	return line, nil
}
