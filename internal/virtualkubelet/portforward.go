package virtualkubelet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
	"k8s.io/streaming/pkg/httpstream"
)

// portForward forwards one port-forward stream of a home pod (one TCP
// connection of 'kubectl port-forward') to port of its remote pod, through
// the provider's pods/portforward with the peer's credentials
// (docs/design.md §4.24). It returns when either side ends the connection;
// an error goes back on the stream's error channel, as the kubelet's does.
func (s *Set) portForward(ctx context.Context, ns, pod string, port int32, stream io.ReadWriteCloser) error {
	k, twin, err := s.remoteOf(ns, pod)
	if err != nil {
		return err
	}
	err = forwardStream(ctx, k, twin, pod, port, stream)
	k.countError("portforward", err)
	if err != nil {
		return fmt.Errorf("forwarding port %d of pod %s/%s on provider %s: %w", port, twin, pod, k.ProviderName, err)
	}
	return nil
}

// forwardStream opens one connection to the provider's pods/portforward of
// twin/pod, with one stream pair for port, and copies stream through it.
func forwardStream(ctx context.Context, k *Kubelet, twin, pod string, port int32, stream io.ReadWriteCloser) error {
	conn, err := dialPortForward(k, twin, pod)
	if err != nil {
		return err
	}
	defer conn.Close()

	headers := http.Header{}
	headers.Set(corev1.StreamType, corev1.StreamTypeError)
	headers.Set(corev1.PortHeader, strconv.Itoa(int(port)))
	headers.Set(corev1.PortForwardRequestIDHeader, "0")
	errorStream, err := conn.CreateStream(headers)
	if err != nil {
		return fmt.Errorf("creating the error stream: %w", err)
	}
	// Nothing is written to it: the provider's kubelet writes why the
	// forward failed, if it does, and closes it when the forward ends.
	_ = errorStream.Close()
	remoteErr := make(chan error, 1)
	go func() {
		msg, err := io.ReadAll(errorStream)
		switch {
		case err != nil:
			remoteErr <- fmt.Errorf("reading the error stream: %w", err)
		case len(msg) > 0:
			remoteErr <- errors.New(string(msg))
		default:
			remoteErr <- nil
		}
	}()

	headers.Set(corev1.StreamType, corev1.StreamTypeData)
	dataStream, err := conn.CreateStream(headers)
	if err != nil {
		return fmt.Errorf("creating the data stream: %w", err)
	}
	go func() {
		// The home client's half-close is the remote pod's EOF; a reset
		// of the home stream ends the copy the same way.
		_, _ = io.Copy(dataStream, stream)
		_ = dataStream.Close()
	}()
	_, copyErr := io.Copy(stream, dataStream)
	select {
	case err := <-remoteErr:
		if err != nil {
			return err
		}
	case <-conn.CloseChan():
	case <-ctx.Done():
	}
	if copyErr != nil && !errors.Is(copyErr, io.EOF) {
		return fmt.Errorf("copying from the remote pod: %w", copyErr)
	}
	return nil
}

// dialPortForward connects to the provider's pods/portforward of twin/pod:
// SPDY tunnelled in a WebSocket, as kubectl does, or plain SPDY when the
// provider refuses the WebSocket upgrade (older API servers).
func dialPortForward(k *Kubelet, twin, pod string) (httpstream.Connection, error) {
	url := k.provider.CoreV1().RESTClient().Post().Resource("pods").Namespace(twin).Name(pod).SubResource("portforward").URL()
	cfg := k.Peer.Config()
	transport, upgrader, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		return nil, err
	}
	viaSPDY := spdy.NewDialerForStreaming(upgrader, &http.Client{Transport: transport}, http.MethodPost, url)
	viaWebSocket, err := portforward.NewSPDYOverWebsocketDialerForStreaming(url, cfg)
	if err != nil {
		return nil, err
	}
	dialer := portforward.NewFallbackDialerForStreaming(viaWebSocket, viaSPDY, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	})
	conn, protocol, err := dialer.Dial(portforward.PortForwardProtocolV1Name)
	if err != nil {
		return nil, fmt.Errorf("connecting to pods/portforward: %w", err)
	}
	if protocol != portforward.PortForwardProtocolV1Name {
		conn.Close()
		return nil, fmt.Errorf("the provider's API server speaks port-forward protocol %q, not %q", protocol, portforward.PortForwardProtocolV1Name)
	}
	return conn, nil
}
