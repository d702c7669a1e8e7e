  // ---- the replay: every burst of the table, in order -----------------------------------
  integer i, wbeat;
  reg [63:0] base;

  task read_burst(input [63:0] addr, input integer nb);
    integer got;
    begin
      araddr_r <= addr; arlen_r <= nb - 1; arvalid_r <= 1'b1;
      tick;
      while (!m_axi_arready && !abort) tick;
      arvalid_r <= 1'b0;
      rready_r <= 1'b1;
      got = 0;
      while (got < nb && !abort) begin
        tick;
        if (m_axi_rvalid) got = got + 1;
      end
      rready_r <= 1'b0;
    end
  endtask

  task write_burst(input [63:0] addr, input integer nb);
    integer sent;
    begin
      awaddr_r <= addr; awlen_r <= nb - 1; awvalid_r <= 1'b1;
      tick;
      while (!m_axi_awready && !abort) tick;
      awvalid_r <= 1'b0;
      sent = 0;
      wdata_r <= ydata[wbeat]; wlast_r <= (nb == 1); wvalid_r <= 1'b1;
      while (sent < nb && !abort) begin
        tick;
        if (m_axi_wready) begin
          sent = sent + 1;
          if (sent < nb) begin
            wdata_r <= ydata[wbeat + sent]; wlast_r <= (sent == nb - 1);
          end else begin
            wvalid_r <= 1'b0; wlast_r <= 1'b0;
          end
        end
      end
      wbeat = wbeat + nb;
      bready_r <= 1'b1;
      tick;
      while (!m_axi_bvalid && !abort) tick;
      bready_r <= 1'b0;
    end
  endtask

  always begin : engine
    wait_start;
    wbeat = 0;
    for (i = 0; i < NBURSTS && !abort; i = i + 1) begin
      case (bkind[i])
        0: base = weight_base;
        1: base = desc_base;
        2: base = value_base;
        default: base = out_base;
      endcase
      if (bslice[i] >= num_desc) begin
        if (bkind[i] == 3) wbeat = wbeat + bbeats[i];
      end else if (bkind[i] == 3)
        write_burst(base + boff[i], bbeats[i]);
      else
        read_burst(base + boff[i], bbeats[i]);
    end
    finish_run;
  end
endmodule
