/**
 * One line at the bottom of a terminal that is redrawn in place (the mock driver's lamp swatch), kept
 * below the log lines: each log write clears it first and redraws it after.
 */
class StatusLine {
  private text = "";
  private stream: NodeJS.WriteStream | undefined;

  set(stream: NodeJS.WriteStream, text: string): void {
    this.stream = stream;
    this.text = text;
    stream.write(`\r\x1b[2K${text}`);
  }

  clear(): void {
    if (this.stream && this.text) this.stream.write("\r\x1b[2K\n");
    this.text = "";
    this.stream = undefined;
  }

  around(write: () => void): void {
    if (!this.stream || !this.text) {
      write();
      return;
    }
    this.stream.write("\r\x1b[2K");
    write();
    this.stream.write(this.text);
  }
}

export const statusLine = new StatusLine();
