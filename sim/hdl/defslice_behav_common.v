  // ---- shared by the behavioural models: run state, handshakes, the register file ----
  // The `NAME lines are filled from the engine's register map (sim/behavioural.py).
  reg start_pulse;
  reg busy, done;
  reg abort;
  reg axil_bvalid, axil_rvalid;
  reg [31:0] axil_rdata;

  assign s_axil_awready = !axil_bvalid && s_axil_awvalid && s_axil_wvalid;
  assign s_axil_wready = !axil_bvalid && s_axil_awvalid && s_axil_wvalid;
  assign s_axil_bvalid = axil_bvalid;
  assign s_axil_bresp = 2'b00;
  assign s_axil_arready = !axil_rvalid;
  assign s_axil_rvalid = axil_rvalid;
  assign s_axil_rdata = axil_rdata;
  assign s_axil_rresp = 2'b00;
  assign irq = done;

  reg [ADDR_BITS-1:0] araddr_r, awaddr_r;
  reg [7:0] arlen_r, awlen_r;
  reg arvalid_r, rready_r, awvalid_r, wvalid_r, wlast_r, bready_r;
  reg [BUS_BITS-1:0] wdata_r;
  assign m_axi_araddr = araddr_r; assign m_axi_arlen = arlen_r; assign m_axi_arvalid = arvalid_r;
  assign m_axi_arsize = SIZE_CODE; assign m_axi_arburst = 2'b01; assign m_axi_arid = 0;
  assign m_axi_arlock = 1'b0; assign m_axi_arcache = 4'd3; assign m_axi_arprot = 3'd0;
  assign m_axi_rready = rready_r;
  assign m_axi_awaddr = awaddr_r; assign m_axi_awlen = awlen_r; assign m_axi_awvalid = awvalid_r;
  assign m_axi_awsize = SIZE_CODE; assign m_axi_awburst = 2'b01; assign m_axi_awid = 0;
  assign m_axi_awlock = 1'b0; assign m_axi_awcache = 4'd3; assign m_axi_awprot = 3'd0;
  assign m_axi_wdata = wdata_r; assign m_axi_wstrb = {BUS_BYTES{1'b1}};
  assign m_axi_wlast = wlast_r; assign m_axi_wvalid = wvalid_r; assign m_axi_bready = bready_r;

  // One clock; a reset aborts the run.
  task tick;
    begin
      @(posedge clk);
      if (rst) abort = 1;
    end
  endtask

  // Wait for CTRL.start outside reset, then run.
  task wait_start;
    begin
      abort = 0;
      @(posedge clk);
      while (!start_pulse || rst) begin
        if (rst) done <= 1'b0;
        @(posedge clk);
      end
      busy <= 1'b1; done <= 1'b0;
    end
  endtask

  // End the run: done, or after a reset every handshake dropped.
  task finish_run;
    begin
      if (!abort) begin
        tick;
        busy <= 1'b0; done <= 1'b1;
      end else begin
        busy <= 1'b0; done <= 1'b0;
        arvalid_r <= 0; rready_r <= 0; awvalid_r <= 0; wvalid_r <= 0; wlast_r <= 0;
        bready_r <= 0;
      end
    end
  endtask

  initial begin
    busy = 1'b0; done = 1'b0; abort = 0; start_pulse = 0;
    arvalid_r = 0; rready_r = 0; awvalid_r = 0; wvalid_r = 0; wlast_r = 0; bready_r = 0;
    araddr_r = 0; awaddr_r = 0; arlen_r = 0; awlen_r = 0; wdata_r = 0;
    axil_bvalid = 0; axil_rvalid = 0; axil_rdata = 0;
  end

  // ---- AXI4-Lite slave: one write or read at a time -------------------------------------
  always @(posedge clk) begin
    start_pulse <= 1'b0;
    if (rst) begin
      axil_bvalid <= 1'b0; axil_rvalid <= 1'b0; axil_rdata <= 32'd0;
`RESET_SETTINGS
    end else begin
      if (s_axil_awready) begin
        axil_bvalid <= 1'b1;
        case (s_axil_awaddr[7:0])
          CTRL_ADDR: start_pulse <= s_axil_wdata[0] && !busy;
`WRITE_CASES
          default: ;
        endcase
      end else if (axil_bvalid && s_axil_bready) begin
        axil_bvalid <= 1'b0;
      end
      if (s_axil_arvalid && !axil_rvalid) begin
        axil_rvalid <= 1'b1;
        case (s_axil_araddr[7:0])
          STATUS_ADDR: axil_rdata <= {30'd0, done, busy};
          ID_ADDR: axil_rdata <= ID_VALUE;
`READ_CASES
          default: axil_rdata <= 32'd0;
        endcase
      end else if (axil_rvalid && s_axil_rready) begin
        axil_rvalid <= 1'b0;
      end
    end
  end

  // ---- performance counters: cleared by reset and start, counting while busy ----------
  always @(posedge clk) begin
    if (rst || start_pulse) begin
`CLEAR_COUNTERS
    end else if (busy) begin
`COUNT
    end
  end

  initial begin
`INIT_SETTINGS
`INIT_COUNTERS
  end

