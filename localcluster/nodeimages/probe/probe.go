// A tiny image for testing the real node without Docker Hub: the few things a test pod does, in one static binary.
//
//	probe api            GET /api from the API server through the `kubernetes` Service with the pod's token
//	probe serve PORT     answer HTTP 200 on PORT until stopped
//	probe get URL        GET URL; exit 0 on HTTP 200, 1 otherwise
//	probe exit CODE      exit with CODE
//
// Standard library only: build-node.sh builds it with `go build probe.go`.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

const serviceAccount = "/var/run/secrets/kubernetes.io/serviceaccount"

func main() {
	if len(os.Args) < 2 {
		fail("usage: probe api | serve PORT | get URL | exit CODE")
	}
	switch os.Args[1] {
	case "api":
		os.Exit(apiServer())
	case "serve":
		serve(argument())
	case "get":
		os.Exit(get(argument()))
	case "exit":
		code, err := strconv.Atoi(argument())
		if err != nil {
			fail("exit CODE: " + err.Error())
		}
		fmt.Printf("exiting with %d\n", code)
		os.Exit(code)
	default:
		fail("unknown command " + os.Args[1])
	}
}

func argument() string {
	if len(os.Args) < 3 {
		fail(os.Args[1] + " needs an argument")
	}
	return os.Args[2]
}

func fail(message string) {
	fmt.Fprintln(os.Stderr, message)
	os.Exit(2)
}

func apiServer() int {
	token, err := os.ReadFile(serviceAccount + "/token")
	if err != nil {
		fail(err.Error())
	}
	authority, err := os.ReadFile(serviceAccount + "/ca.crt")
	if err != nil {
		fail(err.Error())
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(authority)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	host := net.JoinHostPort(os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT"))
	request, _ := http.NewRequest("GET", "https://"+host+"/api", nil)
	request.Header.Set("Authorization", "Bearer "+string(token))
	return report(client.Do(request))
}

func get(url string) int {
	client := &http.Client{Timeout: 10 * time.Second}
	return report(client.Get(url))
}

func report(response *http.Response, err error) int {
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	defer response.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(response.Body, 4096))
	fmt.Printf("HTTP %d %s\n", response.StatusCode, body)
	if response.StatusCode != http.StatusOK {
		return 1
	}
	return 0
}

func serve(port string) {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	server := &http.Server{Addr: ":" + port, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "probe on %s\n", os.Getenv("HOSTNAME"))
	})}
	go func() {
		if err := server.ListenAndServe(); err != http.ErrServerClosed {
			fail(err.Error())
		}
	}()
	<-stop
}
